"""The domain with no I/O: reason codes, job status, units, the job spec, tensor templates and
codecs, compression, models, local training and datasets.

May import: third-party libraries only (numpy, torch, safetensors, pydantic). Nothing in
fedmarket below it; everything above may import it.
"""
