/*
 * kycedge_guard: a Mosquitto 2 plugin that keeps one unit from touching another.
 *
 * The acl_file (deploy/mosquitto/acl) stays the list of topic grants; this plugin adds the
 * three refusals Mosquitto 2.0's acl_file cannot express (docs/decisions/0010):
 *
 *   CONNECT    the username is the client certificate's subject CN (the plugin sets it,
 *              replacing use_identity_as_username), and the client id is bound to it:
 *              a unit ("<tenant>/<device>") must connect with exactly that client id; a
 *              service (a CN without '/') with its CN or "<CN>-<suffix>", suffix from
 *              [A-Za-z0-9._-]. Anything else: CONNACK "not authorized", and the session
 *              that already holds the id is not touched.
 *   SUBSCRIBE  shared subscriptions ($share/...) only for the users in share_users; a unit
 *              only to the filters in unit_subscribe (%u = its CN; an entry ending in "/#"
 *              allows every filter under that prefix). Refused in the SUBACK.
 *   PUBLISH    retained only on topics matching retain_topics (PUBACK "not authorized").
 *
 * Everything the plugin does not refuse is decided by the acl_file (the plugin answers
 * "defer"). Options (mosquitto.conf, space-separated lists):
 *   plugin_opt_share_users      carrier-receiver
 *   plugin_opt_unit_subscribe   kyc/v1/%u/receipts kyc/v1/%u/status fleet/v1/%t/#
 *   plugin_opt_unit_read        fleet/v1/%t/#   (grants a unit its own tenant's fleet topics;
 *                               %t = the tenant part of its CN; the acl_file has no such token)
 *   plugin_opt_retain_topics    kyc/v1/+/+/status fleet/v1/+/+
 * Built by build.sh (gcc, headers from mosquitto-dev and libssl-dev); tested against the
 * real broker by tests/mqtt/test_isolation.py.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_ITEMS 32
#define MAX_NAME 256

struct list {
	int n;
	char *item[MAX_ITEMS];
};

static mosquitto_plugin_id_t *plugin_id;
static struct list share_users, unit_subscribe, unit_read, retain_topics;

static int list_parse(struct list *l, const char *key, const char *value)
{
	char *copy = strdup(value), *save = NULL, *tok;
	if(!copy) return MOSQ_ERR_NOMEM;
	for(tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)){
		if(l->n == MAX_ITEMS){
			mosquitto_log_printf(MOSQ_LOG_ERR, "kycedge_guard: %s: more than %d entries", key, MAX_ITEMS);
			free(copy);
			return MOSQ_ERR_INVAL;
		}
		if(!(l->item[l->n++] = strdup(tok))){
			free(copy);
			return MOSQ_ERR_NOMEM;
		}
	}
	free(copy);
	return MOSQ_ERR_SUCCESS;
}

static void list_free(struct list *l)
{
	for(int i = 0; i < l->n; i++) free(l->item[i]);
	l->n = 0;
}

static bool is_unit(const char *cn)
{
	return strchr(cn, '/') != NULL;
}

static bool safe_suffix(const char *s)
{
	if(!*s) return false;
	for(; *s; s++){
		char c = *s;
		if(!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
				|| c == '.' || c == '_' || c == '-')) return false;
	}
	return true;
}

/* The certificate's single subject CN, copied into out; false if none, several or odd. */
static bool cert_cn(struct mosquitto *client, char *out, size_t size)
{
	X509 *cert = mosquitto_client_certificate(client);
	bool ok = false;
	if(!cert) return false;
	X509_NAME *name = X509_get_subject_name(cert);
	int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if(idx >= 0 && X509_NAME_get_index_by_NID(name, NID_commonName, idx) < 0){
		ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
		int len = ASN1_STRING_length(data);
		const unsigned char *bytes = ASN1_STRING_get0_data(data);
		if(len > 0 && (size_t)len < size && memchr(bytes, '\0', (size_t)len) == NULL){
			memcpy(out, bytes, (size_t)len);
			out[len] = '\0';
			ok = true;
		}
	}
	X509_free(cert);
	return ok;
}

static bool client_id_allowed(const char *cn, const char *id)
{
	size_t n = strlen(cn);
	if(!id) return false;
	if(strcmp(id, cn) == 0) return true;
	return !is_unit(cn) && strncmp(id, cn, n) == 0 && id[n] == '-' && safe_suffix(id + n + 1);
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);
	char cn[MAX_NAME];
	(void)event; (void)userdata;

	if(!cert_cn(ed->client, cn, sizeof(cn))){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "kycedge_guard: refused %s: no usable certificate CN", id);
		return MOSQ_ERR_AUTH;
	}
	if(ed->username && strcmp(ed->username, cn) != 0){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "kycedge_guard: refused %s: username %s is not the certificate's %s",
				id, ed->username, cn);
		return MOSQ_ERR_AUTH;
	}
	if(!client_id_allowed(cn, id)){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "kycedge_guard: refused client id %s for certificate %s", id, cn);
		return MOSQ_ERR_AUTH;
	}
	if(mosquitto_set_username(ed->client, cn) != MOSQ_ERR_SUCCESS) return MOSQ_ERR_AUTH;
	return MOSQ_ERR_SUCCESS;
}

static bool in_list(const struct list *l, const char *s)
{
	for(int i = 0; i < l->n; i++) if(strcmp(l->item[i], s) == 0) return true;
	return false;
}

/* Expand %u (the unit's CN, "<tenant>/<device>") and %t (its tenant) in pattern into out. */
static bool expand(const char *pattern, const char *cn, char *out, size_t size)
{
	const char *slash = strchr(cn, '/');
	size_t tenant_len = slash ? (size_t)(slash - cn) : strlen(cn);
	size_t o = 0;
	for(const char *p = pattern; *p; p++){
		const char *src = NULL;
		size_t n = 0;
		if(p[0] == '%' && p[1] == 'u'){ src = cn; n = strlen(cn); p++; }
		else if(p[0] == '%' && p[1] == 't'){ src = cn; n = tenant_len; p++; }
		if(src){
			if(o + n >= size) return false;
			memcpy(out + o, src, n);
			o += n;
		}else{
			if(o + 1 >= size) return false;
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return true;
}

/* unit_subscribe entry with %u/%t expanded; "/#" at the end allows the whole subtree. */
static bool unit_may_subscribe(const char *cn, const char *filter)
{
	char want[2 * MAX_NAME];
	for(int i = 0; i < unit_subscribe.n; i++){
		if(!expand(unit_subscribe.item[i], cn, want, sizeof(want))) continue; /* too long: never matches */
		size_t o = strlen(want);
		if(o >= 2 && strcmp(want + o - 2, "/#") == 0){
			if(strncmp(filter, want, o - 1) == 0) return true; /* prefix incl. the '/' */
		}else if(strcmp(filter, want) == 0){
			return true;
		}
	}
	return false;
}

/* A unit may receive messages on topics matching a unit_read entry (%u/%t expanded). */
static bool unit_may_read(const char *cn, const char *topic)
{
	char want[2 * MAX_NAME];
	for(int i = 0; i < unit_read.n; i++){
		bool match = false;
		if(!expand(unit_read.item[i], cn, want, sizeof(want))) continue;
		if(mosquitto_topic_matches_sub(want, topic, &match) == MOSQ_ERR_SUCCESS && match) return true;
	}
	return false;
}

static bool retain_allowed(const char *topic)
{
	for(int i = 0; i < retain_topics.n; i++){
		bool match = false;
		if(mosquitto_topic_matches_sub(retain_topics.item[i], topic, &match) == MOSQ_ERR_SUCCESS && match){
			return true;
		}
	}
	return false;
}

static int deny(const char *what, const struct mosquitto_evt_acl_check *ed, const char *user)
{
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "kycedge_guard: denied %s %s to %s (client %s)", what, ed->topic,
			user ? user : "(none)", mosquitto_client_id(ed->client));
	return MOSQ_ERR_ACL_DENIED;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *user = mosquitto_client_username(ed->client);
	(void)event; (void)userdata;

	if(!user) return deny("anonymous access", ed, user);
	if(ed->access == MOSQ_ACL_SUBSCRIBE){
		if(strncmp(ed->topic, "$share/", 7) == 0){
			return in_list(&share_users, user) ? MOSQ_ERR_PLUGIN_DEFER : deny("shared subscription", ed, user);
		}
		if(is_unit(user) && !unit_may_subscribe(user, ed->topic)) return deny("subscription", ed, user);
	}else if(ed->access == MOSQ_ACL_WRITE && ed->retain && !retain_allowed(ed->topic)){
		return deny("retained publish", ed, user);
	}else if(ed->access == MOSQ_ACL_READ && is_unit(user) && unit_may_read(user, ed->topic)){
		return MOSQ_ERR_SUCCESS; /* per-tenant grants the acl_file cannot write without a warning */
	}
	return MOSQ_ERR_PLUGIN_DEFER;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
		int option_count)
{
	int rc = MOSQ_ERR_SUCCESS;
	(void)userdata;
	plugin_id = identifier;
	for(int i = 0; i < option_count && rc == MOSQ_ERR_SUCCESS; i++){
		const char *k = options[i].key, *v = options[i].value ? options[i].value : "";
		if(strcmp(k, "share_users") == 0) rc = list_parse(&share_users, k, v);
		else if(strcmp(k, "unit_subscribe") == 0) rc = list_parse(&unit_subscribe, k, v);
		else if(strcmp(k, "retain_topics") == 0) rc = list_parse(&retain_topics, k, v);
		else if(strcmp(k, "unit_read") == 0) rc = list_parse(&unit_read, k, v);
		else{
			mosquitto_log_printf(MOSQ_LOG_ERR, "kycedge_guard: unknown option plugin_opt_%s", k);
			rc = MOSQ_ERR_INVAL;
		}
	}
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc == MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "kycedge_guard: %d share user(s), %d unit filter(s), %d retain topic(s)",
				share_users.n, unit_subscribe.n, retain_topics.n);
	}
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata; (void)options; (void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	list_free(&share_users);
	list_free(&unit_subscribe);
	list_free(&retain_topics);
	list_free(&unit_read);
	return MOSQ_ERR_SUCCESS;
}
