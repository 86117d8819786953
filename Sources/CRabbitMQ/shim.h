#ifndef SWIFTQ_CRABBITMQ_SHIM_H
#define SWIFTQ_CRABBITMQ_SHIM_H

/* rabbitmq-c 0.12 moved its headers into a rabbitmq-c/ folder; Debian 12 ships 0.11 with the old layout. */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/ssl_socket.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#endif

/* amqp_login_with_properties is variadic (the SASL arguments), which Swift cannot call: expose the PLAIN case. */
static inline amqp_rpc_reply_t CRabbitMQ_loginPlain(amqp_connection_state_t state, const char *vhost, int channel_max,
                                                    int frame_max, int heartbeat, const amqp_table_t *properties,
                                                    const char *user, const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

#endif
