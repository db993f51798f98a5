//! `listvars`, `getvar` and `setvar`: the daemon's tunables (reference §5.2.2,
//! §6.10, §9.11). Names are checked case-insensitively against LIST_TUNABLES and
//! sent exactly as typed.

use ctdbd::protocol::control::{decode_u32, decode_var_list, encode_tunable_name, Tunable};
use ctdbd::protocol::Opcode;
use serde::Serialize;

use super::node::{strtoull, Done};
use super::{json_via_serde, CommandError, Ctx, Report, Style};
use crate::client::{bad_reply, ClientError};

/// One tunable and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Var {
    /// The name (as typed for `getvar`, as listed for `listvars`).
    pub name: String,
    /// Its value.
    pub value: u32,
}

impl Var {
    fn line(&self) -> String {
        format!("{:<26} = {}\n", self.name, self.value)
    }
}

impl Report for Var {
    fn text(&self, _style: &Style) -> String {
        self.line()
    }
    json_via_serde!();
}

/// `ctdb listvars`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VarList {
    /// Every listed tunable, in the daemon's order.
    pub vars: Vec<Var>,
}

impl Report for VarList {
    fn text(&self, _style: &Style) -> String {
        self.vars.iter().map(Var::line).collect()
    }
    json_via_serde!();
}

fn list_names(ctx: &mut Ctx<'_>) -> Result<Vec<String>, CommandError> {
    let data = ctx
        .client
        .control_ok(ctx.cmd, Opcode::LIST_TUNABLES, 0, &[])?;
    Ok(decode_var_list(&data).map_err(|_| bad_reply(Opcode::LIST_TUNABLES, ctx.cmd))?)
}

/// One tunable's value from node `pnn` (GET_TUNABLE).
pub fn get_tunable(ctx: &mut Ctx<'_>, pnn: u32, name: &str) -> Result<u32, ClientError> {
    let data = ctx
        .client
        .control_ok(pnn, Opcode::GET_TUNABLE, 0, &encode_tunable_name(name))?;
    decode_u32(&data, "tunable value").map_err(|_| bad_reply(Opcode::GET_TUNABLE, pnn))
}

fn get_value(ctx: &mut Ctx<'_>, name: &str) -> Result<u32, CommandError> {
    let data =
        ctx.client
            .control_ok(ctx.cmd, Opcode::GET_TUNABLE, 0, &encode_tunable_name(name))?;
    Ok(decode_u32(&data, "tunable value").map_err(|_| bad_reply(Opcode::GET_TUNABLE, ctx.cmd))?)
}

fn check_known(names: &[String], name: &str) -> Result<(), CommandError> {
    if names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        Ok(())
    } else {
        Err(CommandError::stdout(format!("No such tunable {name}")))
    }
}

/// `ctdb listvars`: LIST_TUNABLES, then GET_TUNABLE for each name.
pub fn listvars(ctx: &mut Ctx<'_>, args: &[String]) -> Result<VarList, CommandError> {
    if !args.is_empty() {
        return Err(CommandError::Usage("listvars"));
    }
    let names = list_names(ctx)?;
    let mut vars = Vec::with_capacity(names.len());
    for name in names {
        let value = get_value(ctx, &name)?;
        vars.push(Var { name, value });
    }
    Ok(VarList { vars })
}

/// `ctdb getvar NAME`.
pub fn getvar(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Var, CommandError> {
    let [name] = args else {
        return Err(CommandError::Usage("getvar"));
    };
    check_known(&list_names(ctx)?, name)?;
    let value = get_value(ctx, name)?;
    Ok(Var {
        name: name.clone(),
        value,
    })
}

/// `ctdb setvar NAME VALUE`: VALUE is read like C's `strtoul(…, 0)` (leading number,
/// base from its prefix, truncated to 32 bits); no digits at all is a silent EINVAL.
pub fn setvar(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Done, CommandError> {
    let [name, value] = args else {
        return Err(CommandError::Usage("setvar"));
    };
    check_known(&list_names(ctx)?, name)?;
    let value = strtoull(value).ok_or_else(|| CommandError::silent(22))? as u32;
    let request = Tunable {
        name: name.clone(),
        value,
    };
    let status = ctx
        .client
        .control_status(ctx.cmd, Opcode::SET_TUNABLE, 0, &request.encode())?;
    if status == 1 {
        return Ok(Done {
            warning: Some(format!("Setting obsolete tunable variable '{name}'")),
        });
    }
    Ok(Done::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listvars_lines_match_reference() {
        let list = VarList {
            vars: vec![
                Var {
                    name: "SeqnumInterval".into(),
                    value: 1000,
                },
                Var {
                    name: "ControlTimeout".into(),
                    value: 60,
                },
                Var {
                    name: "AllowMixedVersions".into(),
                    value: 0,
                },
            ],
        };
        assert_eq!(
            list.text(&Style::default()),
            "SeqnumInterval             = 1000\n\
             ControlTimeout             = 60\n\
             AllowMixedVersions         = 0\n"
        );
    }

    #[test]
    fn getvar_keeps_the_typed_name() {
        let v = Var {
            name: "enablebans".into(),
            value: 1,
        };
        assert_eq!(
            v.text(&Style::default()),
            "enablebans                 = 1\n"
        );
    }

    #[test]
    fn unknown_tunable_message() {
        let names = vec!["EnableBans".to_owned()];
        assert!(check_known(&names, "ENABLEBANS").is_ok());
        let (out, err, code) = check_known(&names, "foo").unwrap_err().output();
        assert_eq!(
            (out.as_str(), err.as_str(), code),
            ("No such tunable foo\n", "", 1)
        );
    }

    #[test]
    fn obsolete_warning_goes_to_stderr() {
        let d = Done {
            warning: Some("Setting obsolete tunable variable 'VerifyRecoveryLock'".into()),
        };
        assert_eq!(d.text(&Style::default()), "");
        assert_eq!(
            d.stderr(),
            "Setting obsolete tunable variable 'VerifyRecoveryLock'\n"
        );
    }
}
