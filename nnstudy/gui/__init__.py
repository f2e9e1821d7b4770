"""A local web page that recognises a drawn or uploaded digit with the study's checkpoints."""
