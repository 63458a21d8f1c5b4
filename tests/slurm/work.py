"""The command ``greenlm track`` wraps in the Slurm tests: about 1.5 s of CPU work."""

import time

end = time.monotonic() + 1.5
while time.monotonic() < end:
    sum(range(50000))
