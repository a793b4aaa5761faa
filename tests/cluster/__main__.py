"""Bring a test cluster up by hand: `python -m tests.cluster N`; prints its inventory; Enter tears it down."""

import sys

from tests.cluster.netns import up

cluster = up(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
print(f"inventory: {cluster.inventory}\nssh_config: {cluster.ssh_config}")
print(f"try: orch --help; ORCH_CLUSTER={cluster.inventory} orch launch --all -- python -c 'print(1)'")
try:
    input("press Enter to tear down ")
finally:
    cluster.down()
