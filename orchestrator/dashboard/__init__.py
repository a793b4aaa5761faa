"""`orch dashboard`: a local web app over the job store and each job's kept metric feed (stdlib only)."""
