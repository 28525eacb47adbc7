# The stack's commands. Settings come from .env; a variable given on the command line or in
# the shell wins (APP_SERVER=uwsgi make up).
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

SERVERS := gunicorn uwsgi
DATABASES := sqlite postgres
# The settings below that neither the shell nor the command line sets come from .env, read by the
# tests' reader (scripts/dotenv_file.py) in one run, the first time one of them is needed.
DOTENV_NAMES := APP_SERVER DATABASE HTTP_PORT HTTPS_PORT TLS_DIR LOCUST_WORKERS LOCUST_UI_PORT MONITORING PROMETHEUS_PORT
dotenv_values = $(eval dotenv_values := $$(shell python3 scripts/dotenv_file.py $(DOTENV_NAMES)))$(dotenv_values)
# $(call dotenv,NAME): the value at NAME's place (join pairs the names with the values: NAME=value).
dotenv = $(patsubst $(1)=%,%,$(filter $(1)=%,$(join $(addsuffix =,$(DOTENV_NAMES)),$(dotenv_values))))
APP_SERVER ?= $(call dotenv,APP_SERVER)
DATABASE ?= $(call dotenv,DATABASE)
HTTP_PORT ?= $(call dotenv,HTTP_PORT)
HTTPS_PORT ?= $(call dotenv,HTTPS_PORT)
TLS_DIR ?= $(call dotenv,TLS_DIR)
MONITORING ?= $(call dotenv,MONITORING)
PROMETHEUS_PORT ?= $(call dotenv,PROMETHEUS_PORT)
export APP_SERVER DATABASE HTTP_PORT HTTPS_PORT TLS_DIR PROMETHEUS_PORT
# MONITORING=1 adds the monitoring profile (Prometheus, nginx's exporter) to .env's two.
ifeq ($(MONITORING),1)
export COMPOSE_PROFILES := $(APP_SERVER),$(DATABASE),monitoring
endif

SCENARIOS := throughput streaming swap streams
BENCH_PROFILES := full tiny
BENCH_PROFILE ?= full
# Sections to run alone, by name (loadtest/bench/bench.py --help lists them); empty: every one.
BENCH_ONLY ?=
SCENARIO ?= throughput
# Where loadtest and compare send: nginx's front door, HTTPS; http only with HTTPS_REDIRECT=0.
SCHEMES := https http
SCHEME ?= https
LOADTEST_URL = $(SCHEME)://localhost:$(if $(filter http,$(SCHEME)),$(HTTP_PORT),$(HTTPS_PORT))
USERS ?= 16
DURATION ?= 20s
ROUNDS ?= 3
RESULTS_DIR ?= results
SWAP_TIMEOUT ?= 120
LOCUST_WORKERS ?= $(call dotenv,LOCUST_WORKERS)
LOCUST_UI_PORT ?= $(call dotenv,LOCUST_UI_PORT)
export LOCUST_WORKERS LOCUST_UI_PORT

VENV := .venv
PYTHON := $(VENV)/bin/python
# Both profiles, so down/logs/ps also see a server that is no longer the selected one.
COMPOSE_ALL := docker compose --profile gunicorn --profile uwsgi --profile postgres --profile loadtest --profile monitoring
SECRET_FILE := .secrets/django_secret_key
PG_PASSWORD_FILE := .secrets/postgres_password
# Where scripts/local_tls.py keeps the certificate it makes; any other TLS_DIR is the user's own.
LOCAL_TLS_DIR := .secrets/tls
# Extra CA certificates for the locally built base image (a TLS-re-signing proxy needs them).
BASE_IMAGE_CA_DIR ?=

# $(call one_of,NAME,value,allowed values): stop with the allowed values listed.
one_of = $(if $(filter-out $(3),$(2))$(word 2,$(2))$(if $(2),,x),$(error $(1) must be one of: $(3) (got '$(2)')))

.PHONY: help up down clean logs ps swap test test-fast test-swarm lint format lock loadtest compare loadtest-ui loadtest-ui-down \
	bench bench-images base-image tls tls-reload db-backup db-restore scale \
	push swarm-deploy swarm-loadtest swarm-rm swarm-lab swarm-lab-down

help: ## List the targets and the variables they read
	@echo "Targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 20
	@echo
	@echo "Variables (defaults from .env; override in the shell or as make VAR=value):"
	@grep -E '^[A-Z_]+=' .env | sed 's/^/  /'
	@echo "  DJANGO_SECRET_KEY    generated into $(SECRET_FILE) on the first 'make up'; mounted as a secret"
	@echo "  DATABASE_URL         unset: the DATABASE above; set, any other database (postgres://user:pass@host/db)"
	@echo "  BASE_IMAGE_CA_DIR    CA certificates to trust in the locally built base image"
	@echo "  REPLICAS             for scale: how many APP_SERVER containers to run"
	@echo "  TO, SWAP_TIMEOUT=$(SWAP_TIMEOUT)   for swap: the server to swap to ($(SERVERS)); seconds it may take to be healthy"
	@echo "  SCENARIO=$(SCENARIO) USERS=$(USERS) DURATION=$(DURATION) ROUNDS=$(ROUNDS)   for loadtest, compare, loadtest-ui ($(SCENARIOS))"
	@echo "  SCHEME=$(SCHEME)   for loadtest, compare ($(SCHEMES)): nginx's HTTPS or plain HTTP port"
	@echo "  BENCH_PROFILE=$(BENCH_PROFILE)   for bench ($(BENCH_PROFILES)): tiny is the two-minute smoke run"
	@echo "  BENCH_ONLY=$(BENCH_ONLY)   for bench: these sections alone (for example metrics); empty: all"
	@echo "  REGISTRY, IMAGE_TAG, SWARM_REPLICAS   for push and swarm-deploy: where images go, their tag, app replicas"

# The directory is private to its owner; the file is readable so the container's
# non-root user can read the bind-mounted secret.
$(SECRET_FILE):
	@mkdir -p -m 700 $(dir $@)
	@python3 -c 'import secrets; print(secrets.token_urlsafe(50))' >$@ && chmod 644 $@
	@echo "Generated a Django secret key in $@ (kept out of git)."

# PostgreSQL's password (DATABASE=postgres), made the same way; the cluster takes it on first start.
$(PG_PASSWORD_FILE):
	@mkdir -p -m 700 $(dir $@)
	@python3 -c 'import secrets; print(secrets.token_urlsafe(32))' >$@ && chmod 644 $@
	@echo "Generated a PostgreSQL password in $@ (kept out of git)."

up: $(SECRET_FILE) $(PG_PASSWORD_FILE) tls ## Build and start nginx + APP_SERVER (+ DATABASE, + MONITORING=1's Prometheus); waits until healthy
	$(call one_of,APP_SERVER,$(APP_SERVER),$(SERVERS))
	$(call one_of,DATABASE,$(DATABASE),$(DATABASES))
	$(call one_of,MONITORING,$(MONITORING),0 1)
	docker compose up --detach --build --remove-orphans --wait --wait-timeout 300
	@# Switching servers this way recreates nginx; the previous server is no longer routed to.
	$(COMPOSE_ALL) rm --stop --force $(filter-out $(APP_SERVER),$(SERVERS))
	@echo "Serving through nginx -> $(APP_SERVER): https://localhost:$(HTTPS_PORT)/ (HTTP/1.1, 2 and 3)," \
	  "http://localhost:$(HTTP_PORT)/ redirects there"
	@if [ "$(MONITORING)" = 1 ]; then echo "Prometheus: http://127.0.0.1:$(PROMETHEUS_PORT)/ (docs/monitoring.md)"; fi

tls: ## With TLS_DIR=.secrets/tls (the default): make or renew the local CA's certificate for ALLOWED_HOSTS
	@if [ "$(TLS_DIR)" = "$(LOCAL_TLS_DIR)" ]; then python3 scripts/local_tls.py; \
	  else echo "TLS_DIR=$(TLS_DIR): your own certificate; nothing to make"; fi

tls-reload: ## Load new certificate files into the running nginx (checked first; a graceful reload)
	docker compose exec nginx /etc/nginx/stack/reload-tls.sh

down: ## Stop and remove the containers (the database volume stays)
	$(COMPOSE_ALL) down --remove-orphans

clean: ## down, and also delete the database volume
	$(COMPOSE_ALL) down --remove-orphans --volumes

logs: ## Follow every container's log
	$(COMPOSE_ALL) logs --follow --tail 100

ps: ## Show the containers and their health
	$(COMPOSE_ALL) ps

$(VENV)/.installed: app/requirements.txt gunicorn/requirements.txt uwsgi/requirements.txt tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes \
	  -r app/requirements.txt -r gunicorn/requirements.txt -r uwsgi/requirements.txt -r tests/requirements.txt
	touch $@

test: $(VENV)/.installed ## Lint, then every test, e2e on real containers and the swarm lab included (needs Docker)
	$(MAKE) --no-print-directory lint
	$(VENV)/bin/pytest

test-swarm: $(VENV)/.installed ## The swarm lab's suite alone: three Docker engines in containers, drills under load (~11 min)
	$(VENV)/bin/pytest -m swarm

test-fast: $(VENV)/.installed ## Every test but the container ones: unit, config, nginx + both servers on loopback
	$(VENV)/bin/pytest -m "not e2e"

lint: $(VENV)/.installed ## ruff over all Python, hadolint over every Dockerfile, shellcheck over every shell script
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint --config .hadolint.yaml nginx/Dockerfile gunicorn/Dockerfile uwsgi/Dockerfile postgres/Dockerfile loadtest/Dockerfile \
	  prometheus/Dockerfile nginx-exporter/Dockerfile cgroup-exporter/Dockerfile registry/Dockerfile swarm-node/Dockerfile
	$(VENV)/bin/shellcheck $$(git ls-files '*.sh' .ci/run)

format: $(VENV)/.installed ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock: $(VENV)/.installed ## Re-resolve every requirements.txt from its requirements.in, with hashes
	for dir in app gunicorn uwsgi loadtest tests; do \
	  (cd $$dir && ../$(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 \
	    --generate-hashes --no-header requirements.in -o requirements.txt); \
	done

swap: ## Swap the running stack's app server to TO (gunicorn|uwsgi) without dropping a request
	$(call one_of,TO,$(TO),$(SERVERS))
	python3 scripts/swap.py $(TO) --timeout $(SWAP_TIMEOUT)

scale: ## Run REPLICAS containers of APP_SERVER; DATABASE=postgres: refused past max_connections
	python3 scripts/scale.py $(REPLICAS)

loadtest: $(VENV)/.installed ## Run SCENARIO headless with USERS for DURATION against the running stack
	$(call one_of,SCENARIO,$(SCENARIO),$(SCENARIOS))
	$(call one_of,SCHEME,$(SCHEME),$(SCHEMES))
	$(PYTHON) loadtest/run.py $(SCENARIO) --host $(LOADTEST_URL) --users $(USERS) --duration $(DURATION) \
	  --results-dir $(RESULTS_DIR)

compare: $(VENV)/.installed ## Run SCENARIO against gunicorn and uWSGI in ROUNDS interleaved rounds; writes report.md + chart
	$(call one_of,SCENARIO,$(SCENARIO),$(SCENARIOS))
	$(call one_of,SCHEME,$(SCHEME),$(SCHEMES))
	$(PYTHON) loadtest/compare.py $(SCENARIO) --rounds $(ROUNDS) --users $(USERS) --duration $(DURATION) \
	  --results-dir $(RESULTS_DIR) --host $(LOADTEST_URL)

loadtest-ui: $(SECRET_FILE) $(PG_PASSWORD_FILE) tls ## Locust master + LOCUST_WORKERS workers in compose; web UI on http://localhost:8089
	$(call one_of,SCENARIO,$(SCENARIO),$(SCENARIOS))
	@# Naming a profile on the command line replaces COMPOSE_PROFILES, so name the server too.
	LOADTEST_SCENARIO=$(SCENARIO) docker compose --profile $(APP_SERVER) --profile loadtest \
	  up --detach --build --wait --wait-timeout 300
	@echo "Locust ($(SCENARIO), $(LOCUST_WORKERS) workers): http://localhost:$(LOCUST_UI_PORT)/  (make loadtest-ui-down stops it)"

loadtest-ui-down: ## Stop the Locust containers, leaving the stack up
	docker compose --profile loadtest rm --stop --force locust-master locust-worker

bench: $(SECRET_FILE) $(PG_PASSWORD_FILE) tls $(VENV)/.installed ## Benchmark report in RESULTS_DIR/bench: proxy tax, servers, peers, ceilings, streaming, sweep, HTTPS, databases, worker models, metrics' cost, nginx's work per change (~35 min)
	$(call one_of,BENCH_PROFILE,$(BENCH_PROFILE),$(BENCH_PROFILES))
	$(PYTHON) loadtest/bench/bench.py --profile $(BENCH_PROFILE) --results-dir $(RESULTS_DIR)/bench \
	  $(foreach section,$(BENCH_ONLY),--only $(section))

bench-images: $(VENV)/.installed ## Print image sizes, cold build, rebuild-after-a-view-change and up-to-healthy times
	$(PYTHON) scripts/bench_images.py

BACKUP ?= backups/app-$(shell date -u +%Y%m%dT%H%M%SZ).dump

db-backup: ## DATABASE=postgres: dump the running database to BACKUP (pg_dump, custom format; backups/ by default)
	@mkdir -p -m 700 $(dir $(BACKUP))
	docker compose exec -T postgres pg_dump --host=/tmp --username=app --dbname=app --format=custom >$(BACKUP).partial
	mv $(BACKUP).partial $(BACKUP)
	@echo "Backed up the database to $(BACKUP) ($$(du -h $(BACKUP) | cut -f 1))."

db-restore: ## DATABASE=postgres: replace the running database's contents with BACKUP, in one transaction
	@test -s "$(BACKUP)" || { echo "BACKUP=$(BACKUP): no such dump (make db-backup writes them to backups/)" >&2; exit 2; }
	@# One transaction: the app sees the old data or the new, never a half-restored database.
	docker compose exec -T postgres pg_restore --host=/tmp --username=app --dbname=app --clean --if-exists \
	  --single-transaction --exit-on-error <$(BACKUP)
	@echo "Restored the database from $(BACKUP)."

# --- Docker swarm: docker-swarm.yml over docker-compose.yml (docs/swarm.md) ------------------
push: ## Build the images and push them to REGISTRY (the swarm lab's by default) as IMAGE_TAG
	docker compose --profile gunicorn --profile uwsgi --profile postgres --profile loadtest build
	python3 scripts/swarm.py push

swarm-deploy: $(SECRET_FILE) $(PG_PASSWORD_FILE) tls ## Deploy or update the stack on the swarm the docker CLI points at (DOCKER_HOST), APP_SERVER's server
	$(call one_of,APP_SERVER,$(APP_SERVER),$(SERVERS))
	python3 scripts/swarm.py deploy

swarm-loadtest: ## Locust distributed on the swarm: master on the manager, LOCUST_WORKERS workers on the workers; SCENARIO, USERS, DURATION
	$(call one_of,SCENARIO,$(SCENARIO),$(SCENARIOS))
	LOADTEST_SCENARIO=$(SCENARIO) USERS=$(USERS) DURATION=$(DURATION) python3 scripts/swarm.py loadtest

swarm-rm: ## Remove the stack from the swarm (its volumes stay)
	python3 scripts/swarm.py rm

swarm-lab: ## A real three-node swarm on this machine: Docker engines in containers, and a registry
	python3 scripts/swarm.py lab-up

swarm-lab-down: ## Remove the swarm lab, its nodes' volumes too
	python3 scripts/swarm.py lab-down

base-image: ## Build debian:trixie-slim locally with debootstrap (no registry needed; root)
	scripts/make-base-image.sh $(BASE_IMAGE_CA_DIR)
