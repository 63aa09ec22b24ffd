# The README's first command: the whole product on this machine, on stand-ins for a cluster and UFile.
.PHONY: demo
demo: $(STAMP)  ## set up, then run a two-stage training end to end on local stand-ins (no cluster, no GPU)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m im2txt_standins.demo $(DEMO_ARGS)
