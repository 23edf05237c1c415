"""Authentication: AK/SK request signatures (SDK-HMAC-SHA256) and IAM-style tokens."""
