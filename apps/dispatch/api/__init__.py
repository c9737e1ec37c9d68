"""The dispatch API, a module per resource: messages, inbox, stats."""
