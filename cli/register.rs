//! `thoth register`: register this endpoint with the GovAPI now (MDM install scripts
//! run it once per machine or user). It always sends, even when the state says the
//! endpoint is registered, and records the result in `~/.thoth/state.json` under the
//! state lock, so proxies started later do not register again.

use std::process::ExitCode;

use crate::args::RegisterArgs;
use crate::govapi::{GovApi, Identity};
use crate::settings::profile::Profile;
use crate::state_file::StateFile;

/// Runs `thoth register`.
pub fn run(args: &RegisterArgs) -> ExitCode {
    let profile = match Profile::locate().and_then(|p| p.bootstrap().map(|()| p)) {
        Ok(p) => p,
        Err(e) => return crate::exit::config_error(&e),
    };
    let (settings, _) = crate::status::admin_settings(&args.flags, profile.clone());
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{}", crate::logging::escaped(&e));
            return ExitCode::from(crate::exit::CONFIG);
        }
    };
    let Some(gov) = settings.govapi.clone() else {
        tracing::error!(
            "no GovAPI configured: set THOTH_GOVAPI_URL, or configure the remote enforcer (tenant and API key) so its GovAPI URL can be derived"
        );
        return ExitCode::from(crate::exit::CONFIG);
    };
    let url = gov.url.clone();
    let api = match GovApi::new(gov) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{}", crate::logging::escaped(&e.to_string()));
            return ExitCode::from(crate::exit::FAILURE);
        }
    };
    let mut identity = Identity::from_settings(&settings, "");
    if args.flags.agent_id.is_none() {
        identity.agent_id.clear();
    }
    let state = StateFile::in_profile(&profile.dir);
    let Ok(rt) = crate::runtime::current_thread() else {
        tracing::error!("cannot start the runtime");
        return ExitCode::from(crate::exit::SOFTWARE);
    };
    let result = rt.block_on(api.register_recorded(&identity, &state, true));
    match result {
        Ok(()) => {
            tracing::info!("registered endpoint {} with {url}", identity.endpoint_id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(
                "registration with {url} failed: {}",
                crate::logging::escaped(&e.to_string())
            );
            ExitCode::from(crate::exit::FAILURE)
        }
    }
}
