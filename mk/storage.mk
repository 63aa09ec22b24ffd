# storage part: UFile fetch/sync (trainer/im2txt_storage) and its stand-in server.
.PHONY: test-storage bench-storage ufile-server

test-storage: $(STAMP)  ## storage tests only (stand-in UFile over HTTP, real SDK)
	$(PY) -m pytest tests/storage -q

bench-storage: $(STAMP)  ## 270 files, latency per request: parallel fetch/upload vs a sequential SDK loop
	$(PY) bench/storage.py $(BENCH_STORAGE_ARGS)

BENCH_TARGETS += bench-storage
