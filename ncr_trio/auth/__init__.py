"""Access: accounts and access keys (accounts.py, keys.py), token-auth scopes and bearer tokens
(scopes.py, tokens.py), roles and their action matrix (roles.py), the access gate (control.py) and the
login throttle (throttle.py). Import the module you need: this package loads nothing by itself, so the
CLI can read the roles without loading the token machinery."""
