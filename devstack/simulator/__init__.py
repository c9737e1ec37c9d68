"""The provider simulator: a local process speaking the providers' real HTTP APIs (API.md)."""
