"""Channel adapters: one class per platform integration, selected by channel type code in YAML."""
