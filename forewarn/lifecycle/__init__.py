"""Each subject's lifecycle: its events folded into moments and a history (`fold`), the policy's triggers on
durable_rules (`rules`, `rete`), and the value types evaluation yields (`model`)."""
