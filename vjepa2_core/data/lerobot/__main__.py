import sys

from vjepa2_core.data.lerobot.cli import main

sys.exit(main())
