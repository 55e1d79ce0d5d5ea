# make run:  create/update .venv from requirements.txt, then serve on http://127.0.0.1:8000
# make test: create/update .venv the same way, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements

# Workers, threads, timeouts and request-size limits: gunicorn.conf.py.
# One model thread (TensorFlow and ONNX Runtime) and one OpenCV thread per worker so the two workers
# do not oversubscribe the cores (layouts measured within noise of each other: docs/speed.md).
GUNICORN_ARGS := -c gunicorn.conf.py

.PHONY: run test venv

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when requirements.txt changed since the last install.
$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	cp requirements.txt $(STAMP)

run: venv
	TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 VISAGE_OPENCV_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2 \
		$(BIN)/gunicorn $(GUNICORN_ARGS) wsgi:app

test: venv
	@$(BIN)/python -m pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status
