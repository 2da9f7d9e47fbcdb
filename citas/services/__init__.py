"""Typed service modules over the backend; each owns the wire format of its operations."""
