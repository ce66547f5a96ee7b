.PHONY: setup demo test
setup:
	bash scripts/setup-cpu.sh
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
