//! The portal's localized messages (authservice-api.md, intro): the language is the API user's
//! culture or else the portal's, never `Accept-Language`. Only `Access denied` is fixed English.
//!
//! `Bad keys` in every language is the portal's own resource text as the doc quotes it; the
//! other translations are the double's own, faithful renderings of the English text.

/// The culture a double answers in. One per double (the real portal picks it per API user, else
/// per portal); change it at runtime with
/// [`PortalDouble::set_language`](crate::PortalDouble::set_language).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Language {
    /// English (`en-US`), the default.
    #[default]
    En,
    /// German (`de-DE`).
    De,
    /// Russian (`ru-RU`).
    Ru,
    /// French (`fr-FR`).
    Fr,
    /// Spanish (`es-ES`).
    Es,
    /// Italian (`it-IT`).
    It,
    /// Simplified Chinese (`zh-CN`).
    ZhCn,
}

/// A localized message of the portal, for [`Language::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Text {
    /// An enforced key check failed (400 on DocSpace, in-band on Workspace): `Bad keys`.
    BadKeys,
    /// A login with wrong credentials (401): `User authentication failed`.
    AuthenticationFailed,
    /// A login during the lockout (403): `Too many login attempts. Please try again later`.
    TooManyLoginAttempts,
    /// 402 for a paid service on a plan without third-party services, or the setting hidden by
    /// the operator: `Your pricing plan does not support this option`.
    PlanRestricted,
    /// Workspace's `SaveAuthKeys` when some props are empty and others not:
    /// `Please fill in all fields`.
    FillAllFields,
    /// The bare JSON string of the IP-restriction 403 (the wording is inferred):
    /// `Access from your IP address is restricted`.
    IpRestricted,
}

impl Language {
    /// Every language the double speaks.
    pub const ALL: [Language; 7] = [
        Language::En,
        Language::De,
        Language::Ru,
        Language::Fr,
        Language::Es,
        Language::It,
        Language::ZhCn,
    ];

    /// The culture name: `en`, `de`, `ru`, `fr`, `es`, `it`, `zh-CN`.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::De => "de",
            Language::Ru => "ru",
            Language::Fr => "fr",
            Language::Es => "es",
            Language::It => "it",
            Language::ZhCn => "zh-CN",
        }
    }

    /// The language of a culture name as [`code`](Self::code) gives it (case-insensitive;
    /// `en-US`-style region suffixes are accepted except for Chinese, which needs `zh-CN`).
    pub fn from_code(code: &str) -> Option<Language> {
        if code.eq_ignore_ascii_case("zh-CN") || code.eq_ignore_ascii_case("zh") {
            return Some(Language::ZhCn);
        }
        let base = code.split(['-', '_']).next().unwrap_or("");
        Language::ALL
            .into_iter()
            .find(|l| l != &Language::ZhCn && l.code().eq_ignore_ascii_case(base))
    }

    /// The message in this language.
    pub fn text(self, text: Text) -> &'static str {
        use Language::*;
        match text {
            Text::BadKeys => match self {
                En => "Bad keys",
                De => "Schlechte Tasten",
                Ru => "Неверные ключи",
                Fr => "Clés invalides",
                Es => "Claves incorrectas",
                It => "Chiavi danneggiate",
                ZhCn => "不良秘钥",
            },
            Text::AuthenticationFailed => match self {
                En => "User authentication failed",
                De => "Benutzerauthentifizierung fehlgeschlagen",
                Ru => "Ошибка аутентификации пользователя",
                Fr => "Échec de l'authentification de l'utilisateur",
                Es => "Error de autenticación del usuario",
                It => "Autenticazione utente non riuscita",
                ZhCn => "用户身份验证失败",
            },
            Text::TooManyLoginAttempts => match self {
                En => "Too many login attempts. Please try again later",
                De => "Zu viele Anmeldeversuche. Bitte versuchen Sie es später erneut",
                Ru => "Слишком много попыток входа. Повторите попытку позже",
                Fr => "Trop de tentatives de connexion. Veuillez réessayer plus tard",
                Es => "Demasiados intentos de inicio de sesión. Inténtelo de nuevo más tarde",
                It => "Troppi tentativi di accesso. Riprova più tardi",
                ZhCn => "登录尝试次数过多。请稍后再试",
            },
            Text::PlanRestricted => match self {
                En => "Your pricing plan does not support this option",
                De => "Ihr Preisplan unterstützt diese Option nicht",
                Ru => "Ваш тарифный план не поддерживает эту опцию",
                Fr => "Votre plan tarifaire ne prend pas en charge cette option",
                Es => "Su plan de precios no admite esta opción",
                It => "Il tuo piano tariffario non supporta questa opzione",
                ZhCn => "您的价格方案不支持此选项",
            },
            Text::FillAllFields => match self {
                En => "Please fill in all fields",
                De => "Bitte füllen Sie alle Felder aus",
                Ru => "Пожалуйста, заполните все поля",
                Fr => "Veuillez remplir tous les champs",
                Es => "Por favor, rellene todos los campos",
                It => "Si prega di compilare tutti i campi",
                ZhCn => "请填写所有字段",
            },
            Text::IpRestricted => match self {
                En => "Access from your IP address is restricted",
                De => "Der Zugriff von Ihrer IP-Adresse ist eingeschränkt",
                Ru => "Доступ с вашего IP-адреса ограничен",
                Fr => "L'accès depuis votre adresse IP est restreint",
                Es => "El acceso desde su dirección IP está restringido",
                It => "L'accesso dal tuo indirizzo IP è limitato",
                ZhCn => "您的 IP 地址的访问受到限制",
            },
        }
    }

    /// DocSpace's 400 for a POST without `props` (.NET's `ArgumentNullException`), e.g.
    /// `Value cannot be null. (Parameter 'props')`.
    pub fn props_null(self) -> String {
        format!("{} (Parameter 'props')", self.value_cannot_be_null())
    }

    /// The same on Workspace (.NET Framework's format), e.g.
    /// `Value cannot be null.\r\nParameter name: props`.
    pub(crate) fn props_null_framework(self) -> String {
        let parameter_name = match self {
            Language::En => "Parameter name",
            Language::De => "Parametername",
            Language::Ru => "Имя параметра",
            Language::Fr => "Nom du paramètre ",
            Language::Es => "Nombre del parámetro",
            Language::It => "Nome parametro",
            Language::ZhCn => "参数名",
        };
        format!("{}\r\n{parameter_name}: props", self.value_cannot_be_null())
    }

    fn value_cannot_be_null(self) -> &'static str {
        match self {
            Language::En => "Value cannot be null.",
            Language::De => "Der Wert darf nicht NULL sein.",
            Language::Ru => "Значение не может быть неопределенным.",
            Language::Fr => "La valeur ne peut pas être null.",
            Language::Es => "El valor no puede ser nulo.",
            Language::It => "Il valore non può essere null.",
            Language::ZhCn => "值不能为 null。",
        }
    }

    /// The validation problem for a prop value over the limit (DataAnnotations'
    /// `StringLength` text), e.g. `The field Value must be a string with a maximum length of
    /// 4000.`
    pub fn value_too_long(self, max: usize) -> String {
        match self {
            Language::En => {
                format!("The field Value must be a string with a maximum length of {max}.")
            }
            Language::De => format!(
                "Das Feld Value muss eine Zeichenfolge mit einer maximalen Länge von {max} sein."
            ),
            Language::Ru => {
                format!("Поле Value должно быть строкой с максимальной длиной {max}.")
            }
            Language::Fr => format!(
                "Le champ Value doit être une chaîne dont la longueur maximale est de {max}."
            ),
            Language::Es => {
                format!("El campo Value debe ser una cadena con una longitud máxima de {max}.")
            }
            Language::It => {
                format!(
                    "Il campo Value deve essere una stringa con una lunghezza massima di {max}."
                )
            }
            Language::ZhCn => format!("字段 Value 必须是最大长度为 {max} 的字符串。"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for language in Language::ALL {
            assert_eq!(Language::from_code(language.code()), Some(language));
        }
        assert_eq!(Language::from_code("de-DE"), Some(Language::De));
        assert_eq!(Language::from_code("ZH-cn"), Some(Language::ZhCn));
        assert_eq!(Language::from_code("xx"), None);
    }

    #[test]
    fn every_text_differs_between_languages() {
        for text in [
            Text::BadKeys,
            Text::AuthenticationFailed,
            Text::TooManyLoginAttempts,
            Text::PlanRestricted,
            Text::FillAllFields,
            Text::IpRestricted,
        ] {
            let mut all: Vec<&str> = Language::ALL.iter().map(|l| l.text(text)).collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), Language::ALL.len(), "{text:?}");
        }
    }
}
