//! Reading a new password: from a prompt (twice), or one line of stdin.
//! Never from the command line, where other users could see it.

use std::io::BufRead;

use super::Failure;

/// Reads a password as the user asked.
pub fn read_new(from_stdin: bool) -> Result<String, Failure> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Failure::Runtime(anyhow::anyhow!("cannot read the password from stdin: {e}"))
        })?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        let first = rpassword::prompt_password("New password: ").map_err(|e| {
            Failure::Usage(format!(
                "cannot read a password from the terminal ({e}); use --password-stdin"
            ))
        })?;
        let second = rpassword::prompt_password("Retype new password: ").map_err(|e| {
            Failure::Usage(format!("cannot read a password from the terminal ({e})"))
        })?;
        if first != second {
            return Err(Failure::Usage("the passwords do not match".into()));
        }
        first
    };
    if password.is_empty() {
        return Err(Failure::Usage("the password is empty".into()));
    }
    Ok(password)
}
