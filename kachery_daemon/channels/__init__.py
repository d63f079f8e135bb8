"""Channels: nodes that exchange files through a shared S3-compatible bucket.

A client only names a channel; its node does the work. `config` reads the
`[channels.NAME]` tables of the node's config file, `bucket` wraps boto3 (imported only
here, only when a channel is used), `transfer` moves one object in or out with chunks in
parallel and every byte verified, `provider` answers other nodes' requests, `service`
ties them to a node's storage, and `routes` exposes them over HTTP.
"""
