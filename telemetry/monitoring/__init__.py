"""Threshold monitoring: the thresholds, the monitor that checks each sample against them, the event timeline it
writes, the health verdict read from both, and the performance analysis of a host snapshot against the thresholds.
"""
