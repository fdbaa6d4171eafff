# renamed.sed — the renames of tests/support/renamed.h, for sed -E (see there).
s/\bhsm_mech_name\b/cf_sig_alg_name/g
s/\bhsm_key_type_name\b/cf_key_type_name/g
s/\bhsm_mech\b/cf_sig_alg/g
s/\bhsm_key_type\b/cf_key_type/g
s/\bHSM_MECH__MAX\b/CF_SIG__MAX/g
s/\bHSM_MECH_([A-Z0-9_]+)\b/CF_SIG_\1/g
s/\bHSM_KEY__MAX\b/CF_KEY__MAX/g
s/\bHSM_KEY_(EC_P256|EC_P384|RSA|ED25519)\b/CF_KEY_\1/g
s/\bHSM_SIG_MAX\b/CF_SIG_MAX/g
s/\bPROTO_SIGN__MAX\b/CF_SIGN__MAX/g
s/\bPROTO_SIGN_([A-Z0-9_]+)\b/CF_SIGN_\1/g
s/\bcfg_parse_duration\b/cf_parse_duration/g
s/\bledger_reason_name\b/cf_reason_name/g
s/\bledger_reason_code\b/cf_reason_code/g
s/\bcfg_log_level_name\b/cf_log_level_name/g
s/\bcfg_log_level\b/cf_log_level/g
s/\bCFG_LOG_(ERROR|WARNING|INFO|DEBUG|_MAX)\b/CF_LOG_\1/g
