# The two commands of the README: `make demo` and `make test`.
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck bench bench-adapters install clean

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $(STAMP)

install: $(STAMP)

## Start the demo hub: embedded PostgreSQL + MQTT broker, demo cameras and sensors.
demo: $(STAMP)
	YOLO_OFFLINE=1 $(VENV)/bin/hub demo prepare -c config/demo.yaml
	YOLO_OFFLINE=1 $(VENV)/bin/hub run -c config/demo.yaml

## Run the whole test suite (installs the environment and the test peers first).
test: $(STAMP)
	bash scripts/system-deps.sh
	YOLO_OFFLINE=1 $(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check hub adapters detectors streams alerts

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: $(STAMP)
	bash scripts/system-deps.sh
	YOLO_OFFLINE=1 $(VENV)/bin/python -m benchmarks.cameras

## Adapters: MQTT dialect decoding, MQTT end to end on the local Mosquitto, ONVIF probe/events (~2 min).
bench-adapters: $(STAMP)
	bash scripts/system-deps.sh
	$(VENV)/bin/python -m benchmarks.adapters

clean:
	rm -rf $(VENV) .hub-state .pytest_cache .mypy_cache
