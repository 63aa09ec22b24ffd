#!/usr/bin/env python3
"""/data/train.py in the trainer image: the UAI Train entry point (see im2txt_trainer.train)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from im2txt_trainer.train import main

if __name__ == "__main__":
    sys.exit(main())
