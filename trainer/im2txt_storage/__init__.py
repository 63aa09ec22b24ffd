"""UFile storage commands used inside the training Job's pod (UAI Train semantics): `fetch` and `sync`."""
