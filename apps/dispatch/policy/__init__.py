"""What may be sent, and when: account request rate, quota, frequency limits and dedup (limits, throttling), quiet hours."""
