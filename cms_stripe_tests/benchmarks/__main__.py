import sys

from cms_stripe_tests.benchmarks.runner import main

sys.exit(main())
