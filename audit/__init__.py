"""The audit trail's pure core: the site chain, checkpoints, proof bundles and the accountability trace."""
