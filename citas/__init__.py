"""citas: the appointment-booking assistant of a multi-business WhatsApp AI platform."""

__version__ = "0.1.0"
