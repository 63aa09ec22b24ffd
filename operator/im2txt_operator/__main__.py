import sys

from im2txt_operator.cli import main

sys.exit(main())
