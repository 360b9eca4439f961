"""wsss_core: weakly supervised semantic segmentation from image-level labels.

The package holds the methods (one module each under ``wsss_core.methods``), the shared machinery they
use (data readers, backbones, losses, refinement, segmentation networks, metrics) and one small stage
module per Snakemake rule under ``wsss_core.stages``.
"""

__version__ = "0.1.0"
