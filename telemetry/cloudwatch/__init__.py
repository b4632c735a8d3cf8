"""AWS CloudWatch: metrics, logs, alarms and EventBridge events streamed into the telemetry store (boto3)."""
