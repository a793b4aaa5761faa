.PHONY: setup test demo bench

setup:
	bash scripts/setup.sh

test:
	python3 -m pytest -q tests

demo:
	orch demo

bench:
	python3 bench/launch.py
