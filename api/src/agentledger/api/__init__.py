"""agentledger.api: the FastAPI service (ingest, OTLP, queries, policies, control, dashboards).

``create_app()`` in ``agentledger.api.app`` builds it; ``agentledger api serve`` runs it.
"""
