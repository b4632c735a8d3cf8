"""The host this server runs on: CPU, memory, disk, network and process status (psutil), GPUs (NVML), the sampler
that reads them on a schedule, and the samples as metric points.
"""
