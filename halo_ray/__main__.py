import sys

from halo_ray.cli import main

sys.exit(main())
