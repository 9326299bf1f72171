"""What runs inside the operator's Jobs."""
