"""omnicrm: omnichannel CRM automation for banks."""

__version__ = "0.1.0"
