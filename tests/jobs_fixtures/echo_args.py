"""Test job: print the received arguments and one env value as JSON, so quoting can be checked."""

import json
import os
import sys

print("ARGS " + json.dumps({"argv": sys.argv[1:], "env": os.environ.get("TRICKY", "")}), flush=True)
