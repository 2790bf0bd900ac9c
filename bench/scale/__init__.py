"""Scale measures (``bench/scale/run.py``): worker scaling, worker RSS over 100k jobs, ``info`` at 1M waiting."""
