"""The broker bridge: bank events in from RabbitMQ or NATS JetStream, message statuses out, in a
CloudEvents envelope, behind one `Broker` interface (docs/broker-bridge.md)."""
