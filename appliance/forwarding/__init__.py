"""Server-side call forwarding with forward breakthrough and forward display.

- `records`: the forwards each user set (store namespace ``forwards``) and the
  `Forwards` API the web page and the feature codes use;
- `rules`: the pure decision where a call goes;
- `service`: the glue to the directory, the settings and the PBX model, and
  the feature codes.  `appliance.dialplan.CallRouter` dials what it decides.
"""
