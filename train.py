"""Train and evaluate the DPL trainers with Dassl: CoOp's command line.

    python train.py --root DATA --seed 1 --trainer DPL_MaPLe \
        --dataset-config-file configs/datasets/caltech101.yaml \
        --config-file configs/trainers/DPL_MaPLe/vit_b16.yaml \
        --output-dir output/caltech101/DPL_MaPLe/vit_b16_16shots/seed1 DATASET.NUM_SHOTS 16

Config order as in CoOp: Dassl defaults -> extend_cfg -> dataset config -> method config ->
command-line arguments -> trailing ``KEY VALUE`` options.

An expected error (an unknown option, missing data or weights, a checkpoint that does not match, a
NaN loss) ends the run with one message and exit code 1 (``--debug`` or ``DPL_DEBUG=1`` adds the
traceback); Ctrl-C ends it with exit code 130, and the same command resumes it.
"""

import argparse
import os
import sys

if int(os.environ.get("RANK", "0")) > 0 or not sys.stderr.isatty():  # read when tqdm loads: Dassl's evaluation
    os.environ.setdefault("TQDM_DISABLE", "1")  # bar from rank 0 only, and only on a terminal (not in a log file)

import torch  # noqa: E402

from dpl_plugin.runtime import cli
from dpl_plugin.runtime import distributed
from dpl_plugin.dassl import extend_cfg  # first: says how to install Dassl if it is missing
from dpl_plugin.dassl.datasets import register_datasets
from dpl_plugin.dassl.log_file import setup_log_file
from dpl_plugin.dassl.options import check_registered, merge_file, merge_options

from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY, build_trainer
from dassl.utils import collect_env_info, set_random_seed

import trainers.dpl_coop  # noqa: F401  (each import registers its trainer)
import trainers.dpl_ivlp  # noqa: F401
import trainers.dpl_kgcoop  # noqa: F401
import trainers.dpl_maple  # noqa: F401
import trainers.dpl_promptsrc  # noqa: F401
import trainers.dpl_vpt  # noqa: F401


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def reset_cfg(cfg, args):
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed >= 0:  # CoOp's `if args.seed:` would let the default -1 override a config file's SEED
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:
        merge_file(cfg, args.dataset_config_file, "--dataset-config-file")
    if args.config_file:
        merge_file(cfg, args.config_file, "--config-file")
    reset_cfg(cfg, args)
    merge_options(cfg, args.opts)  # yacs's errors as messages that name the closest valid key
    check_registered(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names(), "trainer", "--trainer")
    check_registered(cfg.DATASET.NAME, DATASET_REGISTRY.registered_names(), "dataset",
                     "DATASET.NAME (from --dataset-config-file)")
    cfg.freeze()
    return cfg


def main(args):
    register_datasets()
    cfg = setup_cfg(args)
    distributed.init_from_env(cfg.USE_CUDA)  # torchrun: one process per GPU (NCCL), or gloo on CPUs
    distributed.quiet_other_ranks()  # rank 0 alone prints and writes log.txt
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)  # the same on every rank: the same initial prompts
    if distributed.is_main():
        setup_log_file(cfg.OUTPUT_DIR)  # takes the folder's lock first: a refused run writes nothing there

    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)

    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return

    if not args.no_train:
        trainer.train()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=-1, help="only positive value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an expected error (or set {cli.DEBUG_ENV}=1)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line")
    return parser


if __name__ == "__main__":
    args = build_parser().parse_args()
    try:
        code = cli.run(lambda: main(args), debug=args.debug)
    finally:
        distributed.shutdown()
    sys.exit(code)
