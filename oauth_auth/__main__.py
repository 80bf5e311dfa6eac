"""`python -m oauth_auth`: the `oauth-auth` command."""

from oauth_auth.cli import main

raise SystemExit(main())
