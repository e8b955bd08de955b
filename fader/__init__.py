"""Fader: edit photos by sliding attributes (Fader Networks, Lample et al., NeurIPS 2017)."""

from fader.model import FaderConfig, FaderNetwork, attribute_channels

__all__ = ["FaderConfig", "FaderNetwork", "attribute_channels"]
