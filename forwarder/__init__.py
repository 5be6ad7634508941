"""A streaming forwarder of AWS CloudTrail and Amazon EKS audit logs to a SIEM's HTTP intake."""

__version__ = "0.1.0"
