# Two commands matter: `make run` (everything embedded: SQLite, in-process tasks, the WhatsApp
# simulator, demo data) and `make test`. See README.md for the production path.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TEST_WORKERS ?= auto

.PHONY: install run test lint worker beat bench lock clean

$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(INSTALLED)

install: $(INSTALLED)

# Development defaults; anything already set in the environment (or .env) wins.
run: export DJANGO_DEBUG ?= true
run: export WHATSAPP_BACKEND ?= simulator
run: export WHATSAPP_APP_SECRET ?= simulator-development-secret
run: export WHATSAPP_VERIFY_TOKEN ?= simulator-verify-token
run: export WHATSAPP_PHONE_NUMBER_ID ?= 106540352242922
run: export WHATSAPP_DISPLAY_PHONE_NUMBER ?= +15550100001
run: export WHATSAPP_BUSINESS_ACCOUNT_ID ?= 102290129340398
run: export WHATSAPP_SIMULATOR_WEBHOOK_URL ?= http://127.0.0.1:8000/webhooks/whatsapp/
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setup_demo
	@# The dispatcher stands in for Celery beat: deferred and retried messages go out when due.
	$(PY) manage.py run_dispatcher & dispatcher=$$!; trap 'kill $$dispatcher 2>/dev/null' EXIT INT TERM; \
		$(PY) manage.py runserver 127.0.0.1:8000

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

worker: install
	$(VENV)/bin/celery -A config worker --pool=threads --concurrency=4 --loglevel=INFO

# Periodic jobs (template sync every 15 minutes); run exactly one beat per deployment.
beat: install
	$(VENV)/bin/celery -A config beat --loglevel=INFO

bench: install
	$(PY) -m bench

lock:
	$(PY) -m pip freeze --exclude-editable | grep -v '^consent-first' | sed '1i # Exact versions the project was last tested with. Regenerate with: make lock' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
