"""The authors' released models (facebookresearch/FaderNetworks): which files exist
(`releases`), where they are cached (`cache`), how their PyTorch-0.3 pickles are read without
running code (`legacy_pickle`), how they map onto our networks (`conversion`), and the
`python -m fader.authors` command that writes a model folder from one of them."""
