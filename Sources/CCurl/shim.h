#ifndef LOADSTAR_CCURL_SHIM_H
#define LOADSTAR_CCURL_SHIM_H
#include <curl/curl.h>

/* Swift cannot call C variadics: one typed, prefixed wrapper per argument type. */
static inline CURLcode CCurl_easy_setopt_long(CURL *_Nonnull h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_off(CURL *_Nonnull h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_str(CURL *_Nonnull h, CURLoption o, const char *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_ptr(CURL *_Nonnull h, CURLoption o, void *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_slist(CURL *_Nonnull h, CURLoption o, struct curl_slist *_Nullable v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode CCurl_easy_setopt_write(CURL *_Nonnull h, CURLoption o, curl_write_callback _Nullable f) { return curl_easy_setopt(h, o, f); }
static inline CURLcode CCurl_easy_getinfo_long(CURL *_Nonnull h, CURLINFO i, long *_Nonnull out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode CCurl_easy_getinfo_off(CURL *_Nonnull h, CURLINFO i, curl_off_t *_Nonnull out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode CCurl_easy_getinfo_private(CURL *_Nonnull h, void *_Nullable *_Nonnull out) { return curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)out); }
static inline CURLcode CCurl_easy_setopt_opensocket(CURL *_Nonnull h, curl_opensocket_callback _Nullable f) { return curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, f); }
static inline CURLMcode CCurl_multi_setopt_long(CURLM *_Nonnull m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }
static inline CURLcode CCurl_global_init_default(void) { return curl_global_init(CURL_GLOBAL_DEFAULT); }
static inline CURLcode CCurl_msg_result(CURLMsg *_Nonnull m) { return m->data.result; }
#endif
